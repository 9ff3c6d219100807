"""Parameters of one area, added to the one table in params.py (see its docstring).

Certificates (mta/tls/keys.py, mta/tls/expiry.py, ``mta cert``); Postfix has
neither: it cannot read encrypted keys and does not watch expiry.
"""

from __future__ import annotations

from mta.config import types as t  # noqa: F401
from mta.config.params import _bool, _int, _list, _p, _str, _time  # noqa: F401

_str("tls_key_password_file", "",
     "Postern: a file whose first line is the passphrase of encrypted private keys "
     "(PKCS#8 \"ENCRYPTED PRIVATE KEY\"), so the daemon restarts unattended (Sun Messaging "
     "Server's sslpassword.conf). Keep it mode 0600. Empty: keys must be unencrypted.")
_time("tls_cert_expiry_warning_time", "30d",
      "Postern: warn (maillog, daily, and mta cert list) when a certificate in use expires "
      "within this time; 0 warns only once expired.", unit="d")
