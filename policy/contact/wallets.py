"""Crypto wallet addresses: Bitcoin (legacy and bech32), Ethereum, Tron.

Base58 addresses (Bitcoin legacy, Tron) are case-sensitive, so they are matched on the
cased fold, and must mix upper and lower case as real ones do: a word in capitals or in
lower case is not one, and an address typed in one case would not work anyway. Checksums
are not required: a mistyped address still asks to be paid off the platform.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .limits import MAX_CANDIDATES

_BASE58 = "1-9A-HJ-NP-Za-km-z"
# Each begins with the address's first character, checked against what precedes only then.
_CASED = re.compile(
    rf"[13T](?<![A-Za-z0-9].)(?:(?<=[13])[{_BASE58}]{{25,34}}|(?<=T)[{_BASE58}]{{33}})"
    r"(?![A-Za-z0-9])"
)
_FOLDED = re.compile(
    r"[b0](?<![a-z0-9].)(?:(?<=b)c1[ac-hj-np-z02-9]{39,59}|(?<=0)x[0-9a-f]{40})(?![a-z0-9])"
)


def wallets(cased: str, folded: str) -> Iterator[tuple[int, int, str | None]]:
    examined = 0
    for match in (*_CASED.finditer(cased), *_FOLDED.finditer(folded)):
        examined += 1
        if examined > MAX_CANDIDATES:
            yield match.start(), len(folded), "wallet"  # past that, the rest is one finding
            return
        address = cased[match.start() : match.end()]
        if match.re is _CASED:
            if any(c.isupper() for c in address[1:]) and any(c.islower() for c in address):
                yield match.start(), match.end(), "wallet"
        # bech32 is written in one case; an Ethereum address in any mix (EIP-55).
        elif address.startswith("0") or address.islower() or address.isupper():
            yield match.start(), match.end(), "wallet"
