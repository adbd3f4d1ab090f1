"""The WorkLens browser extension (Manifest V3): its files, and a build of them
for Chromium-based browsers or Firefox. See ``background.js`` for what it does."""
