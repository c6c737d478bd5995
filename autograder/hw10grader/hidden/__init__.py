"""Hidden checks: judge side only, never shipped to students or sent to the sandbox."""
