"""What every HTTP surface of the platform renders the same way: problem details, page headers, templates."""
