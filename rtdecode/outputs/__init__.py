"""Outputs: where decoded frames go: publish (rtframe PUB), record (session folders), triggers
(closed-loop rules and sinks) and the viewer (a subscriber only)."""
