"""The haproxy configuration of a harness's front door: one frontend on 127.0.0.1 balancing round-robin over
the instances on 127.0.0.1 (HTTP, or TCP connections for a network load balancer). Each harness says what
differs (limits, timeouts, health checks, TLS, the request log) as the directives of each section; the
shape is written once here.

Used by the chaos topology (`Topology._start_haproxy`) and the crowd measurement
(`scripts/flashsale_crowd/topology.py`)."""


def haproxy_config(port, server_ports, global_lines=(), defaults_lines=(), frontend_lines=(), backend_lines=(),
                   bind_options="", server_options="", mode="http"):
    """The text of a haproxy configuration:

        global              global_lines
        defaults            mode `mode` (http or tcp), defaults_lines
        frontend api        bind 127.0.0.1:port + bind_options, frontend_lines, default_backend instances
        backend instances   balance roundrobin, backend_lines, one `server iN 127.0.0.1:PORT` + server_options
                            per entry of server_ports

    Each line is one directive, written as given (no `%` escaping: a log-format is passed as haproxy reads
    it)."""
    assert server_ports, "a backend needs at least one server"
    assert mode in ("http", "tcp"), mode
    servers = ["server i%d 127.0.0.1:%d%s" % (index, server_port, server_options)
               for index, server_port in enumerate(server_ports)]
    sections = (("global", list(global_lines)),
                ("defaults", ["mode %s" % mode] + list(defaults_lines)),
                ("frontend api", ["bind 127.0.0.1:%d%s" % (port, bind_options)] + list(frontend_lines)
                 + ["default_backend instances"]),
                ("backend instances", ["balance roundrobin"] + list(backend_lines) + servers))
    return "".join(title + "\n" + "".join("    %s\n" % line for line in lines) for title, lines in sections)
