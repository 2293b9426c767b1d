#!/bin/sh
# /run.sh of the outer machine for setup.sh on a host without hardware KVM: vmkit's default
# guest on the outer console, so the person at the terminal types into the guest's shell.
# The outer machine powers off when vmkit exits (type `poweroff` in the guest).
exec vmkit run
