"""PMP point blots (Akiva & Dana): clicks -> many labelled pixels, without training."""
