"""The operator console (Textual): screens over the engines' events; no business logic here."""
