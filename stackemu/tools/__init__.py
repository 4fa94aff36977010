"""The tools people know for the NIC layer (`ip link`, `ip neigh`, `ethtool`, `tc`,
`sysctl`, `tcpdump`, `hwstamp_ctl`), one module each, talking gRPC to a host's
NicService. Each module's main(host, argv) parses argv as the real tool does, prints
what it prints and returns its exit status."""
