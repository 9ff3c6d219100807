"""Test fakes shared by every test: a scripted SMTP peer, a man in the middle, a fake DNS,
test certificates."""
