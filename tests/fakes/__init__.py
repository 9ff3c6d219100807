"""Test fakes shared by every test: a scripted SMTP peer, a fake DNS, test certificates."""
