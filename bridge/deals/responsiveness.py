"""Responsiveness for the API: one user's figures, or every seller's a page at a time
(the definitions are policy.responsiveness's)."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

from bridge.market.records.users import matrix_id_of
from policy.ids import MarketUserId, UserId
from policy.responsiveness import Responsiveness as Figures
from policy.responsiveness import responsiveness

from .records import Exchanges


@dataclass(frozen=True, slots=True)
class UserFigures:
    user_id: MarketUserId
    matrix_id: UserId
    as_seller: Figures
    as_buyer: Figures


@dataclass(frozen=True, slots=True)
class SellerFigures:
    user_id: MarketUserId
    matrix_id: UserId
    figures: Figures


class Responsiveness:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._exchanges = Exchanges(db)

    async def of_user(self, user_id: MarketUserId, since: int, now: int) -> UserFigures | None:
        """None when the marketplace never named this user."""
        matrix_id = await matrix_id_of(self._db, user_id)
        if matrix_id is None:
            return None
        return await self._figures(user_id, matrix_id, since, now)

    async def sellers(
        self, since: int, now: int, after: str, limit: int
    ) -> tuple[list[SellerFigures], str | None]:
        """Sellers (their figures as sellers) by user id after ``after``; the next page's
        ``after`` (None: the last)."""
        sellers = await self._exchanges.sellers(after, limit + 1)
        page = [
            SellerFigures(
                MarketUserId(user_id),
                matrix_id,
                responsiveness(await self._exchanges.of(matrix_id, "seller", since), now),
            )
            for user_id, matrix_id in sellers[:limit]
        ]
        return page, (page[-1].user_id if len(sellers) > limit else None)

    async def _figures(
        self, user_id: MarketUserId, matrix_id: UserId, since: int, now: int
    ) -> UserFigures:
        of = self._exchanges.of
        return UserFigures(
            user_id,
            matrix_id,
            as_seller=responsiveness(await of(matrix_id, "seller", since), now),
            as_buyer=responsiveness(await of(matrix_id, "buyer", since), now),
        )
