"""
The outcome of verifying a call's identity, and how it reaches the callee.

A :class:`Verdict` is one of the three values 3GPP TS 24.229 §3.1 gives the
``verstat`` parameter (TN-Validation-Passed, TN-Validation-Failed,
No-TN-Validation) with a :class:`Reason`; a failure also names the
response RFC 8224 §6.2.2 gives it, for a policy that rejects failed calls.
:func:`with_verstat` puts the value on the caller's URI the callee's phone
is shown.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import enum

import attrs
from attrs import frozen

from pbx.sip.uri import URI

__all__ = ["Reason", "Status", "Verdict", "VerificationFailure", "with_verstat"]


class Status(enum.Enum):
    """The ``verstat`` values (3GPP TS 24.229 §7.2A.20)."""

    PASSED = "TN-Validation-Passed"
    FAILED = "TN-Validation-Failed"
    NO_VALIDATION = "No-TN-Validation"


class Reason(enum.Enum):
    """Why a verdict is what it is: a short name fit for a log line or a CDR."""

    PASSED = "passed"
    NO_IDENTITY = "no-identity"
    """The request has no Identity header."""
    NOT_SHAKEN = "not-shaken"
    """Identity headers are there, but none carries a SHAKEN PASSporT."""
    NOT_A_NUMBER = "not-a-number"
    """The caller is not identified by a telephone number: nothing to validate."""
    NOT_CONFIGURED = "not-configured"
    """This pbx has no trust anchors: it verifies nothing."""
    MALFORMED = "malformed"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    INFO_MISMATCH = "info-mismatch"
    """The header's ``info`` is not the PASSporT's ``x5u``."""
    X5U_NOT_ALLOWED = "x5u-not-allowed"
    X5U_UNAVAILABLE = "x5u-unavailable"
    CERTIFICATE_UNTRUSTED = "certificate-untrusted"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"
    ORIG_MISMATCH = "orig-mismatch"
    DEST_MISMATCH = "dest-mismatch"


class VerificationFailure(Exception):
    """Verification stopped at one step; :attr:`reason` says which."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


# RFC 8224 §6.2.2: the response a verifier that rejects gives each failure.
_BAD_INFO = (436, "Bad Identity Info")
_UNSUPPORTED = (437, "Unsupported Credential")
_INVALID = (438, "Invalid Identity Header")
_RESPONSES: dict[Reason, tuple[int, str]] = {
    Reason.MALFORMED: _INVALID,
    Reason.UNSUPPORTED_ALGORITHM: _UNSUPPORTED,
    Reason.INFO_MISMATCH: _INVALID,
    Reason.X5U_NOT_ALLOWED: _BAD_INFO,
    Reason.X5U_UNAVAILABLE: _BAD_INFO,
    Reason.CERTIFICATE_UNTRUSTED: _UNSUPPORTED,
    Reason.BAD_SIGNATURE: _INVALID,
    # RFC 8224 §6.2.1: an old "iat" is a 403 with this reason phrase.
    Reason.STALE: (403, "Stale Date"),
    Reason.ORIG_MISMATCH: _INVALID,
    Reason.DEST_MISMATCH: _INVALID,
}


@frozen
class Verdict:
    """What verifying a call's Identity headers concluded."""

    status: Status
    reason: Reason
    detail: str = ""
    """One line for the log: what exactly failed."""
    attest: str | None = None
    """The attestation level of the PASSporT that passed."""
    origid: str | None = None
    """The ``origid`` of the PASSporT that passed."""
    x5u: str | None = None
    """Where the PASSporT's certificate was (or was to be) fetched from."""

    @classmethod
    def failed(cls, reason: Reason, detail: str, x5u: str | None = None) -> Verdict:
        """
        A failed verification.

        :param reason: why.
        :param detail: one line naming what failed.
        :param x5u: the certificate's location, when known.
        :returns: the verdict.
        """
        return cls(Status.FAILED, reason, detail, x5u=x5u)

    @classmethod
    def unverified(cls, reason: Reason, detail: str = "") -> Verdict:
        """
        A call with nothing to verify (No-TN-Validation).

        :param reason: why nothing was verified.
        :param detail: one line for the log.
        :returns: the verdict.
        """
        return cls(Status.NO_VALIDATION, reason, detail)

    @property
    def passed(self) -> bool:
        """Whether the caller's number was validated."""
        return self.status is Status.PASSED

    @property
    def verstat(self) -> str:
        """The ``verstat`` parameter's value for the callee (3GPP TS 24.229)."""
        return self.status.value

    @property
    def response(self) -> tuple[int, str] | None:
        """
        The status code and reason phrase RFC 8224 §6.2.2 gives this failure
        when the policy rejects it; None when the call is not a failure.
        """
        if self.status is not Status.FAILED:
            return None
        return _RESPONSES.get(self.reason, _INVALID)


def with_verstat(uri: URI, verdict: Verdict | Status) -> URI:
    """
    Mark the caller's URI with the verdict, as the callee's phone is to see it.

    3GPP TS 24.229 §5.7.1.25 puts ``verstat`` among the telephone number's
    parameters: on a ``tel`` URI a URI parameter, on a SIP URI a parameter
    of the user part (``sip:+15551234567;verstat=TN-Validation-Passed@host;user=phone``).
    A ``verstat`` the caller's side put there is replaced: only this
    verifier may say what was verified.  A URI whose user part is not a
    number is returned unchanged.

    :param uri: the From or P-Asserted-Identity URI.
    :param verdict: the verification outcome (or just its status).
    :returns: the marked URI.
    """
    verstat = verdict.value if isinstance(verdict, Status) else verdict.verstat
    if uri.scheme == "tel":
        params = tuple(p for p in uri.params if p[0] != "verstat")
        return attrs.evolve(uri, params=(*params, ("verstat", verstat)))
    if not uri.is_sip or not uri.user:
        return uri
    number, *rest = uri.user.split(";")
    if not number.lstrip("+").replace("-", "").replace(".", "").isdigit():
        return uri
    kept = [p for p in rest if p.split("=", 1)[0].lower() != "verstat"]
    user = ";".join([number, *kept, f"verstat={verstat}"])
    return attrs.evolve(uri, user=user)
