# The escape and abuse suite, with the faults and load cases
# (tests/security/, docs/security.md "Threat model and escape suite").
exec bash "$(dirname "$0")/../security/run.sh"
