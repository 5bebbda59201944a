"""What the homeserver does with a party's event in a managed room before anyone sees it
(the Synapse module asks these; the bot still judges everything after delivery).

    mode "refuse"  an event that breaks a content rule is refused (the sender gets the reason)
    mode "mask"    contact details are masked (`policy.masking`) and the message delivered;
                   an event that breaks any other rule is refused
    mode "off"     everything is delivered; the bot redacts afterwards
"""

from __future__ import annotations

from enum import StrEnum

from .rules import Rule, Verdict


class BeforeDelivery(StrEnum):
    MASK = "mask"
    REFUSE = "refuse"
    OFF = "off"


def refused_for(verdict: Verdict, mode: BeforeDelivery) -> list[str]:
    """The rules an event is refused for before delivery ([] lets it through)."""
    if mode is BeforeDelivery.OFF:
        return []
    masked = {Rule.CONTACT_DETAILS} if mode is BeforeDelivery.MASK else set()
    return [v.rule.value for v in verdict.violations if v.rule not in masked]
