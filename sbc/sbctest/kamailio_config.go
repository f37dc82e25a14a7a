package sbctest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// writeConfig writes Kamailio's configuration for k.Addr.
func (k *Kamailio) writeConfig() error {
	var b bytes.Buffer
	calls := ""
	if k.calls {
		calls = "yes"
	}
	// A condition on the source address, in Kamailio's script.
	var trusted []string
	for _, a := range k.trusted {
		trusted = append(trusted, "src_ip == "+a.Unmap().String())
	}
	err := kamailioConfig.Execute(&b, map[string]string{
		"Listen":   k.Addr.String(),
		"DB":       filepath.Join(k.dir, "db"),
		"Fifo":     k.fifoPath,
		"ReplyDir": k.replyDir + "/",
		"Realm":    KamailioRealm,
		"Marker":   requestMarker,
		"Calls":    calls,
		"Trusted":  strings.Join(trusted, " || "),
	})
	if err != nil {
		return err
	}
	return os.WriteFile(k.cfgPath, b.Bytes(), 0o600)
}

// kamailioConfig is Kamailio's configuration. Every module is in Debian's
// kamailio package.
var kamailioConfig = template.Must(template.New("kamailio.cfg").Parse(`#!KAMAILIO
# Written by github.com/psigate/psigate/sbc/sbctest: a registrar standing in
# for the PBX in the SBC's tests{{if .Calls}}, which connects calls between its
# users as well{{end}}.

debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
# Keep the SBC's TCP connection however idle it is during a test.
tcp_connection_lifetime=3605

listen=udp:{{.Listen}}
listen=tcp:{{.Listen}}

loadmodule "jsonrpcs.so"
{{- if .Calls}}
# Before the modules that use it.
loadmodule "tm.so"
{{- end}}
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "nathelper.so"
{{- if .Calls}}
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
{{- end}}

# Control: JSON-RPC over a FIFO of this run only.
modparam("jsonrpcs", "transport", 2)
modparam("jsonrpcs", "fifo_name", "{{.Fifo}}")
modparam("jsonrpcs", "fifo_reply_dir", "{{.ReplyDir}}")
modparam("jsonrpcs", "fifo_mode", 0600)
modparam("jsonrpcs", "pretty_format", 0)

# A whole message, base64, in one log line.
modparam("xlog", "buf_size", 65536)

# Location table in memory only, keyed on the user alone.
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "use_domain", 0)
modparam("usrloc", "timer_interval", 5)

modparam("registrar", "min_expires", 0)
modparam("registrar", "received_avp", "$avp(RECEIVED)")
modparam("nathelper", "received_avp", "$avp(RECEIVED)")

# Users and plain-text passwords in a db_text table.
modparam("auth_db", "db_url", "text://{{.DB}}")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "use_domain", 0)
modparam("auth_db", "load_credentials", "")
{{- if .Calls}}

# A next hop that sends no provisional within 5 s gets the caller a 408.
modparam("tm", "fr_timer", 5000)
{{- end}}

request_route {
	# Every request, before anything else: read by Kamailio.Requests.
	xlog("L_NOTICE", "{{.Marker}}$TV(s) $TV(u) $pr $si $sp $(mb{s.encode.base64})\n");
{{- if .Calls}}

	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		route(WITHINDLG);
		exit;
	}
	if (method == "CANCEL") {
		# To the branches of the INVITE it cancels.
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}
	# A retransmission of a request in progress ends here.
	t_check_trans();
{{- end}}

	if (method == "OPTIONS") {
		sl_send_reply("200", "OK");
		exit;
	}
	if (method == "REGISTER") {
		route(REGISTER);
		exit;
	}
	if (method == "ACK") {
		exit;
	}
{{- if .Calls}}
	if (method == "INVITE") {
		route(CALL);
		exit;
	}
{{- end}}
	sl_send_reply("501", "Not Implemented");
	exit;
}

route[REGISTER] {
	# Keep where it came from: the binding's Received.
	fix_nated_register();
	if (!www_authorize("{{.Realm}}", "subscriber")) {
		# -2: wrong password, -3: no such user.
		$var(rc) = $rc;
		if ($var(rc) == -2 || $var(rc) == -3) {
			sl_send_reply("403", "Forbidden");
			exit;
		}
		www_challenge("{{.Realm}}", "1");
		exit;
	}
	if ($au != $tU) {
		sl_send_reply("403", "Forbidden");
		exit;
	}
	consume_credentials();
	if (!save("location")) {
		sl_reply_error();
	}
	exit;
}

{{- if .Calls}}

route[CALL] {
	# Phones prove who they are; trusted peers (trunks, the SBC) are
	# known by their address.
	$var(trusted) = 0;
{{- if .Trusted}}
	if ({{.Trusted}}) {
		$var(trusted) = 1;
	}
{{- end}}
	if ($var(trusted) == 0) {
		if (!proxy_authorize("{{.Realm}}", "subscriber")) {
			# -2: wrong password, -3: no such user.
			$var(rc) = $rc;
			if ($var(rc) == -2 || $var(rc) == -3) {
				sl_send_reply("403", "Forbidden");
				exit;
			}
			proxy_challenge("{{.Realm}}", "1");
			exit;
		}
		if ($au != $fU) {
			sl_send_reply("403", "Forbidden");
			exit;
		}
		consume_credentials();
	}
	# The callee: a user of this PBX (the user part alone), registered.
	if (!is_subscriber("$ru", "subscriber", "2")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	record_route();
	if (!lookup("location")) {
		sl_send_reply("480", "Temporarily Unavailable");
		exit;
	}
	route(RELAY);
}

route[WITHINDLG] {
	# Along the Route set the INVITE recorded.
	if (loose_route()) {
		route(RELAY);
	}
	# The ACK of a failed INVITE belongs to the INVITE's transaction.
	if (method == "ACK") {
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}
	sl_send_reply("404", "Not Here");
	exit;
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
{{- end}}
`))
