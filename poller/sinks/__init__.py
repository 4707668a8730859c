"""Where events go: each sink turns one event into one delivery attempt."""
