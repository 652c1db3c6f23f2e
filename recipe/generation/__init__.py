"""Generation backends behind one interface (`base.GenerationBackend`)."""
