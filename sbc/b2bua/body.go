package b2bua

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strings"
)

// body is a message body that carries SDP: either SDP alone or a
// multipart/mixed body with an SDP part among others (RFC 5621; an
// emergency call carries its location as a PIDF-LO part, RFC 6442).
// Only the SDP is translated; the other parts cross byte for byte.
type body struct {
	sdp []byte
	// before and after surround the SDP part's content in a multipart
	// body (nil for SDP alone); contentType is the body's type.
	before, after []byte
	contentType   string
}

var errNoSDP = errors.New("no SDP in the body")

// bodyOf finds the SDP in a message body of the given Content-Type: nil
// for an empty body, errNoSDP for a body without SDP.
func bodyOf(raw []byte, contentType string) (*body, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	media, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("Content-Type %q: %w", contentType, err)
	}
	switch {
	case media == "application/sdp":
		return &body{sdp: raw, contentType: contentType}, nil
	case strings.HasPrefix(media, "multipart/"):
		return multipartSDP(raw, params["boundary"], contentType)
	}
	return nil, errNoSDP
}

// multipartSDP splits a multipart body around its SDP part's content
// (RFC 2046 section 5.1.1): parts are separated by CRLF "--" boundary,
// each with its headers, an empty line and its content.
func multipartSDP(raw []byte, boundary, contentType string) (*body, error) {
	if boundary == "" {
		return nil, errors.New("multipart body without a boundary")
	}
	delim := []byte("--" + boundary)
	// The first delimiter may open the body; the others follow a CRLF.
	pos := bytes.Index(raw, delim)
	if pos < 0 {
		return nil, errors.New("multipart body without its boundary")
	}
	for {
		start := pos + len(delim)
		if bytes.HasPrefix(raw[start:], []byte("--")) {
			return nil, errNoSDP // the closing delimiter
		}
		next := bytes.Index(raw[start:], append([]byte("\r\n"), delim...))
		if next < 0 {
			return nil, errors.New("multipart body not closed")
		}
		part := raw[start : start+next]
		hdrEnd := bytes.Index(part, []byte("\r\n\r\n"))
		if hdrEnd >= 0 && partIsSDP(part[:hdrEnd]) {
			cStart := start + hdrEnd + 4
			cEnd := start + next
			return &body{sdp: raw[cStart:cEnd], before: raw[:cStart], after: raw[cEnd:], contentType: contentType}, nil
		}
		pos = start + next + 2
	}
}

func partIsSDP(headers []byte) bool {
	for _, line := range strings.Split(string(headers), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "Content-Type") {
			continue
		}
		media, _, err := mime.ParseMediaType(strings.TrimSpace(value))
		return err == nil && media == "application/sdp"
	}
	return false
}

// with is the body with its SDP replaced.
func (b *body) with(sdp []byte) []byte {
	if b.before == nil {
		return sdp
	}
	out := make([]byte, 0, len(b.before)+len(sdp)+len(b.after))
	out = append(out, b.before...)
	out = append(out, sdp...)
	return append(out, b.after...)
}
