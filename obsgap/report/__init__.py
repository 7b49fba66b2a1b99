"""The report model: one frozen, typed description of a run that every output (HTML, JSON, Markdown) renders."""
