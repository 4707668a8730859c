"""Getting events out of the outbox and into sinks: signing, retry policy, dispatcher."""
