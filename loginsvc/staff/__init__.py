"""Account administration for ops: Django's admin, staff-only with a second factor, every action audited."""
