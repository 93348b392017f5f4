"""A cluster's certificate authority and the client and serving certificates signed by it (openssl).

Real nodes need identities the API server can tell apart: each kubelet is `system:node:<name>` in
`system:nodes` (so the Node authorizer and NodeRestriction confine it to its own node), kube-proxy is
`system:kube-proxy`, and the API server presents a client certificate to kubelets, which check it
against this CA and authorise it by webhook (SubjectAccessReview), so the kubelet API is never open.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CA_DAYS = 3650
CERT_DAYS = 365


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    def ensure_ca(self) -> None:
        if self.ca_cert.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _openssl("genrsa", "-out", str(self.ca_key), "2048")
        _openssl(
            "req", "-x509", "-new", "-key", str(self.ca_key), "-days", str(CA_DAYS),
            "-subj", "/CN=mesoskube-local-ca", "-out", str(self.ca_cert),
        )  # fmt: skip

    def issue(
        self,
        name: str,
        common_name: str,
        groups: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """(cert, key) for a client (and, with `ips` or `dns`, a server) identity; reused when present."""
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if cert.exists() and key.exists():
            return cert, key
        self.ensure_ca()
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={common_name}"
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        usage = "clientAuth,serverAuth" if ips or dns else "clientAuth"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
        lines.append(f"extendedKeyUsage={usage}")
        if ips or dns:
            lines.append(
                "subjectAltName=" + ",".join([*(f"IP:{ip}" for ip in ips), *(f"DNS:{d}" for d in dns)])
            )
        ext.write_text("\n".join(lines) + "\n")
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-days", str(CERT_DAYS), "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
        key.chmod(0o600)
        return cert, key
