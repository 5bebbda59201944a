"""The policy bot: judging room events, planning and carrying out its Matrix actions, admin
commands, and transcripts."""
