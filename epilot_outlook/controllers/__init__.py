# The OAuth callback and Graph webhook controllers land here in a later issue.
