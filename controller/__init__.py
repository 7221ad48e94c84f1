"""Link orchestration, classical channel, key store and the `cvqkd` command line."""
