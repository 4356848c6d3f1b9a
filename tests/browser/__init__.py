"""Browser tests: the web pages and the API docs in Debian's Chromium (see README.md)."""
