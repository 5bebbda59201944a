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
    POST .../account/password, account/3pid..., account/deactivate, delete_devices,
         login/get_token; DELETE .../devices/{id}   refused to a managed account (the
                                     marketplace's sessions are its only way in)
    PUT  .../user/{user}/account_data/m.invite_permission_config (and MSC4155's)
                                     refused to a managed account: it cannot refuse invitations

Before any of that, for everyone: a request whose access token the gateway and Synapse could
read differently (two Authorization headers, a header and an access_token parameter, two of
those, a token in a form body, a scheme other than ``Bearer``) is refused with 401
(`requesters.access_token`). The bot and the admins then pass through untouched. Run it with
``python -m bridge gateway``; `make run` starts it in front of its Synapse.
"""
