"""Deep links to a managed room, for the marketplace's e-mails and pages: a matrix.to permalink
of the room's alias (any Matrix client) and, where a web client is configured, its own link
(Element Web's ``#/room/<alias>``). The alias is the one reserved for the room's object, so a
link is known before the room exists and stays true if the room is ever replaced."""

from __future__ import annotations

from dataclasses import dataclass

from .rooms import RoomKind, alias_localpart


@dataclass(frozen=True, slots=True)
class RoomLinks:
    alias_prefix: str
    domain: str
    web_client_url: str | None = None

    def alias(self, kind: RoomKind, object_id: str) -> str:
        return f"#{alias_localpart(self.alias_prefix, kind, object_id)}:{self.domain}"

    def of(self, kind: RoomKind, object_id: str) -> dict[str, str]:
        alias = "%23" + self.alias(kind, object_id)[1:]  # the rest is URL-safe already
        links = {"matrix_to": f"https://matrix.to/#/{alias}"}
        if self.web_client_url:
            links["web"] = f"{self.web_client_url.rstrip('/')}/#/room/{alias}"
        return links
