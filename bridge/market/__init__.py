"""The marketplace's objects and their rooms: transactions, disputes, moderation, the room
keeper that holds each room to its plan, the records by table, and the chat list."""
