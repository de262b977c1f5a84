"""Everything HTTP that is not the bridge: the listeners' Site and its endpoints."""
