package teamd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

const (
	requestPrefix = "REQUEST"
	successPrefix = "REPLY_SUCCESS"
	errorPrefix   = "REPLY_ERROR"
)

// Method names teamd knows.
const (
	MethodPortConfigUpdate  = "PortConfigUpdate"
	MethodPortConfigDump    = "PortConfigDump"
	MethodPortAdd           = "PortAdd"
	MethodPortRemove        = "PortRemove"
	MethodConfigDump        = "ConfigDump"
	MethodConfigDumpActual  = "ConfigDumpActual"
	MethodStateDump         = "StateDump"
	MethodStateItemValueGet = "StateItemValueGet"
	MethodStateItemValueSet = "StateItemValueSet"
)

// Error is an error reply from teamd, e.g. Code "NoSuchDev".
type Error struct {
	Method  string
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("teamd %s: %s: %s", e.Method, e.Code, e.Message)
}

// ErrMalformed is matched by errors about a message that breaks the framing.
var ErrMalformed = errors.New("teamd: malformed control message")

func escape(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("%w: argument ends in a lone backslash", ErrMalformed)
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case '\\':
			b.WriteByte('\\')
		default:
			return "", fmt.Errorf("%w: unknown escape \\%c", ErrMalformed, s[i])
		}
	}
	return b.String(), nil
}

// EncodeRequest builds a request message.
func EncodeRequest(method string, args ...string) []byte {
	var b bytes.Buffer
	b.WriteString(requestPrefix + "\n" + method + "\n")
	for _, a := range args {
		b.WriteString(escape(a))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseRequest splits a request message into method and arguments. Every
// line must end in a newline, as teamd's getline insists.
func ParseRequest(msg []byte) (method string, args []string, err error) {
	if len(msg) == 0 || msg[len(msg)-1] != '\n' {
		return "", nil, fmt.Errorf("%w: request does not end in a newline", ErrMalformed)
	}
	lines := strings.Split(string(msg[:len(msg)-1]), "\n")
	if lines[0] != requestPrefix {
		return "", nil, fmt.Errorf("%w: not a request (%q)", ErrMalformed, lines[0])
	}
	if len(lines) < 2 || lines[1] == "" {
		return "", nil, fmt.Errorf("%w: request without a method", ErrMalformed)
	}
	for _, l := range lines[2:] {
		a, err := unescape(l)
		if err != nil {
			return "", nil, err
		}
		args = append(args, a)
	}
	return lines[1], args, nil
}

// Success builds a success reply.
func Success(payload string) []byte { return []byte(successPrefix + "\n" + payload) }

// Failure builds an error reply.
func Failure(code, message string) []byte {
	return []byte(errorPrefix + "\n" + code + "\n" + message + "\n")
}

// ParseReply reads a reply to method; an error reply is returned as *Error.
func ParseReply(method string, msg []byte) (string, error) {
	s := string(msg)
	if rest, ok := strings.CutPrefix(s, successPrefix+"\n"); ok {
		return rest, nil
	}
	if rest, ok := strings.CutPrefix(s, errorPrefix+"\n"); ok {
		code, msg, _ := strings.Cut(rest, "\n")
		return "", &Error{Method: method, Code: code, Message: strings.TrimSuffix(msg, "\n")}
	}
	first, _, _ := strings.Cut(s, "\n")
	return "", fmt.Errorf("%w: reply to %s starts with %q", ErrMalformed, method, first)
}
