"""Crypto wallet addresses: Bitcoin (legacy and bech32), Ethereum, Tron, Litecoin (legacy and
bech32), Dogecoin, XRP and Monero; Solana after a word about paying or a wallet.

Base58 addresses (all but bech32 and Ethereum) are case-sensitive, so they are matched on
the cased fold, and must mix upper and lower case and hold a digit as real ones do: a word in
capitals or in lower case, or CamelCase words, are not one, and an address typed in one
case would not work anyway. Checksums are not required: a mistyped address still asks to be
paid off the platform. A Solana address is any base58 string of 32 to 44 characters, with no
prefix of its own: alone it could be any identifier, so it counts after a cue ("sol",
"wallet", "send", "pay"...) in the 48 characters before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .limits import MAX_CANDIDATES

_BASE58 = "1-9A-HJ-NP-Za-km-z"
# Base58 strings long enough to be an address, beginning with an address's first character;
# which one it is is told by that character and the length: Bitcoin 1 or 3 and 25 to 34
# more, Tron T, Litecoin L or M and Dogecoin D and 33 more, XRP r and 24 to 34 more, Monero
# 4 or 8 and 94 more (105 in an integrated address). Solana's, of 32 to 44 and any first
# character, are looked for only in a text with a cue.
_CASED = re.compile(rf"[13TLMDr48](?<![A-Za-z0-9].)[{_BASE58}]{{24,105}}(?![A-Za-z0-9])")
_SOLANA = re.compile(rf"[{_BASE58}](?<![A-Za-z0-9].)[{_BASE58}]{{31,43}}(?![A-Za-z0-9])")
_LENGTHS = {
    **dict.fromkeys("13", range(26, 36)),
    **dict.fromkeys("TLMD", (34,)),
    "r": range(25, 36),
    **dict.fromkeys("48", (95, 106)),
}
# bech32 (Bitcoin bc1, Litecoin ltc1) and Ethereum (0x and 40 hex digits).
_BECH32 = r"[ac-hj-np-z02-9]{39,59}(?![a-z0-9])"
_FOLDED = re.compile(
    rf"b(?<![a-z0-9].)c1{_BECH32}|l(?<![a-z0-9].)tc1{_BECH32}"
    r"|0(?<![a-z0-9].)x[0-9a-f]{40}(?![a-z0-9])"
)
_SOLANA_CUE = re.compile(
    r"(?:solana|sol|phantom|wallet|portefeuille|address|adresse|addr|usdc|usdt|crypto|send"
    r"|pay|paie|envoie|envoyer)(?![a-z])"
)
_CUE_HINTS = "sol phantom wallet portefeuille addr adresse usd crypto send pay paie envoi".split()
_CUE_WINDOW = 48


def wallets(cased: str, folded: str) -> Iterator[tuple[int, int, str | None]]:
    examined = 0
    cue = any(word in folded for word in _CUE_HINTS) and _cue(folded, 0, len(folded))
    solana = _SOLANA.finditer(cased) if cue else ()
    for match in (*_CASED.finditer(cased), *_FOLDED.finditer(folded), *solana):
        address = cased[match.start() : match.end()]
        if match.re is not _FOLDED and not _mixed(address):
            continue  # a word, CamelCase words: no candidate
        examined += 1
        if examined > MAX_CANDIDATES:
            yield match.start(), len(folded), "wallet"  # past that, the rest is one finding
            return
        if match.re is _FOLDED:
            # bech32 is written in one case; an Ethereum address in any mix (EIP-55).
            if address.startswith("0") or address.islower() or address.isupper():
                yield match.start(), match.end(), "wallet"
        elif (match.re is _CASED and len(address) in _LENGTHS[address[0]]) or (
            match.re is _SOLANA
            and _cue(folded, max(0, match.start() - _CUE_WINDOW), match.start())
        ):
            yield match.start(), match.end(), "wallet"


def _mixed(address: str) -> bool:
    """Upper and lower case after the first character, and a digit, as base58 addresses."""
    rest = address[1:]
    return (
        any(c.isupper() for c in rest)
        and any(c.islower() for c in rest)
        and any(c.isdigit() for c in address)
    )


def _cue(folded: str, start: int, end: int) -> bool:
    """Whether a word about paying or a wallet is between ``start`` and ``end``."""
    for cue in _SOLANA_CUE.finditer(folded, start, end):
        if not cue.start() or not folded[cue.start() - 1].isalpha():
            return True
    return False
