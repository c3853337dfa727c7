"""Plain-data reports turned into text, tables, pictures and plots; nothing here
computes a gradient, and nothing prints except through the CLI."""
