"""HTTP requests altdub sends on a user's behalf (webhooks): to public addresses only, signed, never redirected."""
