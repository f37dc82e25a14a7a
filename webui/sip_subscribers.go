package webui

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/sbc"
)

// subscribersData is the remote subscribers page: its inputs in sections.
type subscribersData struct {
	Changes  int
	Sections []inputSection
}

type inputSection struct {
	Title  string
	Inputs []sipInput
}

// sipInput is a labelled number input or checkbox with a hint below it;
// Warn is a warning shown with it, Alert says the current value is the
// one warned about.
type sipInput struct {
	Slot              *slot
	Check             bool
	Label, Hint, Warn string
	Alert             bool
}

func number(f *form, path string, v int, label, hint string) sipInput {
	return sipInput{Slot: f.input(path, strconv.Itoa(v)), Label: label, Hint: hint}
}

func checkbox(f *form, path string, on bool, label, hint string) sipInput {
	return sipInput{Slot: f.check(path, on), Check: true, Label: label, Hint: hint}
}

// buildSubscribers lays out the remote subscribers page for r, with the
// seed's labels (9.4.1.1) and the defaults.
func buildSubscribers(f *form, r sbc.RemoteSubscribers, changes int) subscribersData {
	def := sbc.DefaultRemoteSubscribers()
	return subscribersData{Changes: changes, Sections: []inputSection{
		{"General Settings", []sipInput{checkbox(f, subscribersPath+".enabled", r.Enabled, "Enable Remote Subscribers",
			"Relay the registrations of access-realm clients (Zoom PSI) to the PBX.")}},
		{"Register throttling", throttlingInputs(f, r.RegisterThrottling, def.RegisterThrottling)},
		{"Registrations", registrationInputs(f, r, def)},
		{"Calls", callInputs(f, r, def)},
	}}
}

func throttlingInputs(f *form, t, def sbc.RegisterThrottling) []sipInput {
	T := subscribersPath + ".registerThrottling"
	return []sipInput{
		checkbox(f, T+".enabled", t.Enabled, "Enable register throttling",
			"UDP clients get a short expiry that keeps their NAT binding open; the PBX is refreshed on a longer interval."),
		number(f, T+".udpSeconds", t.UDPSeconds, "Timer value towards subscriber - UDP (sec)", fmt.Sprintf("Default %d.", def.UDPSeconds)),
		checkbox(f, T+".streamEnabled", t.StreamEnabled, "Enable register throttling for TLS", "Throttling for TCP and TLS clients."),
		number(f, T+".streamSeconds", t.StreamSeconds, "Timer value towards subscriber TCP/TLS (sec)", fmt.Sprintf("Default %d.", def.StreamSeconds)),
		number(f, T+".maxThresholdSeconds", t.MaxThresholdSeconds, "Maximum throttling timer threshold (sec)",
			fmt.Sprintf("The longest interval the PBX registration is refreshed on, not below the timers towards subscribers; default %d.", def.MaxThresholdSeconds)),
	}
}

// registrationInputs carry the seed's warning (9.4.1.1 step 6) at the
// maximum expiry, shown as an alert while the value is below the default.
func registrationInputs(f *form, r, def sbc.RemoteSubscribers) []sipInput {
	R := subscribersPath
	expiry := number(f, R+".maxExpirySeconds", r.MaxExpirySeconds, "Maximum registration expiry time (sec)",
		fmt.Sprintf("The longest registration expiry granted; default %d (31 days).", def.MaxExpirySeconds))
	expiry.Warn = fmt.Sprintf("Keep it at %d: with a lower value, registrations of Zoom mobile clients are rejected (seed 9.4.1.1 step 6).", def.MaxExpirySeconds)
	expiry.Alert = r.MaxExpirySeconds < def.MaxExpirySeconds
	return []sipInput{
		expiry,
		number(f, R+".minIntervalSeconds", r.MinIntervalSeconds, "Minimum registration interval (sec)",
			fmt.Sprintf("Shorter intervals are answered 423 Interval Too Brief; at most the maximum expiry; default %d.", def.MinIntervalSeconds)),
		checkbox(f, R+".quarantine.enabled", r.Quarantine.Enabled, "Quarantine registration rate violators", "Block a source that registers faster than allowed."),
		number(f, R+".quarantine.durationSeconds", r.Quarantine.DurationSeconds, "Quarantine duration (sec)",
			fmt.Sprintf("How long a violating source stays blocked; default %d.", def.Quarantine.DurationSeconds)),
	}
}

func callInputs(f *form, r, def sbc.RemoteSubscribers) []sipInput {
	R := subscribersPath
	return []sipInput{
		number(f, R+".inviteNoAnswerTimeoutMs", r.InviteNoAnswerTimeoutMs, "INVITE No Answer timeout (msec)",
			fmt.Sprintf("Ends a ringing call nobody answers; default %d (6 minutes).", def.InviteNoAnswerTimeoutMs)),
		number(f, R+".inviteNoReplyTimeoutMs", r.InviteNoReplyTimeoutMs, "INVITE No Reply timeout (msec)",
			fmt.Sprintf("Ends an INVITE that gets no response at all; default %d.", def.InviteNoReplyTimeoutMs)),
	}
}

func readSubscribersForm(f url.Values, c *config.Config) (map[string]string, error) {
	r, raw, err := parseSubscribersForm(f)
	setSubscribers(c, r)
	return raw, err
}
