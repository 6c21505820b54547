// Package discovery finds InfraKit plugins in the plugin directory (docs/infrakit/PROTOCOL.md §4):
// $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins, else ~/.infrakit/plugins. A plugin named
// N listens on the unix socket <dir>/N (or, for the TCP variant, <dir>/N.listen holds a URL
// such as tcp://127.0.0.1:24864), and <dir>/N.pid holds its server's PID.
//
// Names have the form lookup[/subtype]: Lookup resolves the lookup part to an address usable
// by spi/rpc's clients and returns the subtype. Claim is the server side: it takes a name for a
// new server, cleaning up the socket and pid file a dead process left behind and refusing to
// touch those of a live one.
package discovery
