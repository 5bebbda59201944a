"""The client gateway: what Matrix clients connect to in front of the homeserver.

It forwards every request as it is, except the few that open a channel around a room's lock
for which Synapse offers no module hook (`policy.channels` decides; `guards.py` applies):

    PUT  .../sendToDevice/...        a party's to-device messages: only to their own devices
    PUT|DELETE .../profile/...       profile fields: only the marketplace sets them
    PUT  .../rooms/{room}/typing/... typing: only where the typist may post
    POST .../keys/query, keys/claim  only one's own keys, the bot's and the admins'
    POST .../createRoom              refused before Synapse tells whether an alias is taken
    any path naming #<prefix>...     our rooms' aliases: only for the room's members
    POST|PUT /_matrix/media/.../upload   a party's upload judged whole (policy.uploads), and
                                     its name and declared type as text

The bot and the admins pass through untouched. Run it with ``python -m bridge gateway``;
`make run` starts it in front of its Synapse.
"""
