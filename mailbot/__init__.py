"""mailbot package."""
