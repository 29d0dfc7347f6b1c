"""What the benches share: processes and /proc (`procs`), CPU per role (`cpu`), scratch databases
and Redis namespaces (`databases`), timing and completion polling (`timing`), machine facts and
the end of a run (`facts`)."""
