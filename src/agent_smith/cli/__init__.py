"""The `agent-smith` command line: thin verbs over the subsystems."""
