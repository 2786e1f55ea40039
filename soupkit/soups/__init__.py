"""Study-level stages over merge/ and probes/: soups of a study, ingredients, adapt."""
