"""Email worker: each booking's confirmation email, sent over SMTP and recorded once."""
