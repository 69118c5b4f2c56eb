"""What was made and what ran: the model registry and the runs table."""
