"""The web chat the marketplace embeds in its own pages (docs/webchat.md).

assets.py   the built bundle shipped in static/ (webchat/ holds its sources) and its manifest
server.py   /chat/: the page (its config inlined, its security headers), the bundle, embed.js,
            and /chat/api/v1/chats, which answers a Matrix session's own chats
"""
