"""The inspector's loop: uncertain parts to a person, their answers back into the next dataset."""
