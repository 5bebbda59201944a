"""From the homeserver into the bridge: intake (store, then acknowledge), the inbox, the inbox
worker that turns stored events into notifications and policy verdicts, and recovery."""
