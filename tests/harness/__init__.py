"""What the tests share: gateways in processes and in memory, nodes, waits, kits per transport."""
