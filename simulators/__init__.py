"""Plant simulators standing in for gateway hardware (gas, dust, power) with labelled incidents."""
