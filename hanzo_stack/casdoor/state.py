"""Casdoor's bootstrap state: generated once into the state dir, reused on every start.

Holds the sidecar application's client id/secret, the admin password and the RSA key and
certificate Casdoor signs JWTs with. Rendered into ``init_data.json`` with
``initDataNewOnly=true``, so a restart (or even a lost database) keeps the same secrets and
signing key, and tokens issued before a restart still verify after it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, SecretStr

from hanzo_contract.settings import write_private

REPO_CASDOOR_DIR = Path(__file__).resolve().parents[2] / "casdoor"
#: Casdoor's images, served by the stack's nginx (casdoor/static/README.md)
CASDOOR_STATIC_DIR = REPO_CASDOOR_DIR / "static"
#: Casdoor's default ``staticBaseUrl``
CASDOOR_CDN = "https://cdn.casbin.org"
ORGANIZATION = "hanzo"
SIDECAR_APP = "hanzo-sidecar"
CLI_APP = "hanzo-cli"
CERT_NAME = "cert-hanzo"


class CasdoorSecrets(BaseModel):
    """Everything generated for one Casdoor; written 0600, never logged (SecretStr)."""

    organization: str = ORGANIZATION
    sidecar_app: str = SIDECAR_APP
    cli_app: str = CLI_APP
    cert_name: str = CERT_NAME
    sidecar_client_id: str
    sidecar_client_secret: SecretStr
    cli_client_id: str
    cli_client_secret: SecretStr
    admin_password: SecretStr
    builtin_admin_password: SecretStr

    @classmethod
    def generate(cls) -> CasdoorSecrets:
        return cls(
            sidecar_client_id=secrets.token_hex(10),
            sidecar_client_secret=SecretStr(secrets.token_hex(20)),
            cli_client_id=secrets.token_hex(10),
            cli_client_secret=SecretStr(secrets.token_hex(20)),
            admin_password=SecretStr(secrets.token_urlsafe(18)),
            builtin_admin_password=SecretStr(secrets.token_urlsafe(18)),
        )

    def dump_plain(self) -> str:
        data = self.model_dump()
        for key, value in data.items():
            if isinstance(value, SecretStr):
                data[key] = value.get_secret_value()
        return json.dumps(data, indent=2)


def _make_cert() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hanzo Casdoor JWT")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 20))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class CasdoorState:
    """The files of one Casdoor instance under ``<state_dir>/casdoor``."""

    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "casdoor"
        self.secrets_path = self.run_dir / "secrets.json"
        self.cert_path = self.run_dir / "jwt-cert.pem"
        self.key_path = self.run_dir / "jwt-key.pem"
        self.init_data_path = self.run_dir / "init_data.json"
        self.db_path = self.run_dir / "casdoor.db"
        self.pid_path = self.run_dir / "casdoor.pid"
        self.port_path = self.run_dir / "port"
        self.origin_path = self.run_dir / "origin"
        self.log_path = self.run_dir / "casdoor.log"

    def load_or_create(self) -> CasdoorSecrets:
        """Generate secrets and the signing cert on first use; afterwards read them back."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.secrets_path.exists():
            found = CasdoorSecrets.model_validate_json(self.secrets_path.read_text())
        else:
            found = CasdoorSecrets.generate()
            write_private(self.secrets_path, found.dump_plain().encode())
        if not self.key_path.exists():
            cert_pem, key_pem = _make_cert()
            write_private(self.key_path, key_pem)
            self.cert_path.write_bytes(cert_pem)
        return found

    def render(self, found: CasdoorSecrets, static_url: str = CASDOOR_CDN) -> None:
        """Write ``conf/app.conf`` and ``init_data.json`` into the run dir; ``static_url``:
        Casdoor's ``staticBaseUrl``, where the images named in the init data live."""
        conf_dir = self.run_dir / "conf"
        conf_dir.mkdir(exist_ok=True)
        (conf_dir / "app.conf").write_text((REPO_CASDOOR_DIR / "conf" / "app.conf").read_text())
        values = {
            "ORGANIZATION": found.organization,
            "CERT_NAME": found.cert_name,
            "CERT_PEM": self.cert_path.read_text(),
            "CERT_KEY_PEM": self.key_path.read_text(),
            "SIDECAR_APP": found.sidecar_app,
            "SIDECAR_CLIENT_ID": found.sidecar_client_id,
            "SIDECAR_CLIENT_SECRET": found.sidecar_client_secret.get_secret_value(),
            "CLI_APP": found.cli_app,
            "CLI_CLIENT_ID": found.cli_client_id,
            "CLI_CLIENT_SECRET": found.cli_client_secret.get_secret_value(),
            "ADMIN_PASSWORD": found.admin_password.get_secret_value(),
            "STATIC_URL": static_url.rstrip("/"),
        }
        text = (REPO_CASDOOR_DIR / "init_data.template.json").read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", json.dumps(value)[1:-1])
        json.loads(text)  # the template must stay valid JSON once filled
        write_private(self.init_data_path, text.encode())
