package teamd

import (
	"errors"
	"reflect"
	"testing"
)

func TestRequestFraming(t *testing.T) {
	// Reference §3: StateDump is 18 bytes on the wire.
	if got := string(EncodeRequest(MethodStateDump)); got != "REQUEST\nStateDump\n" {
		t.Fatalf("StateDump request %q", got)
	}
	args := []string{"Ethernet0", "{\"lacp_key\":1,\n\"x\":\"a\\\\b\"}"}
	msg := EncodeRequest(MethodPortConfigUpdate, args...)
	m, got, err := ParseRequest(msg)
	if err != nil || m != MethodPortConfigUpdate || !reflect.DeepEqual(got, args) {
		t.Fatalf("round trip: %q %q %v", m, got, err)
	}
	for _, bad := range []string{"", "REQUEST\nStateDump", "REPLY\nStateDump\n", "REQUEST\n\n", "REQUEST\nPortAdd\nbad\\q\n"} {
		if _, _, err := ParseRequest([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: want ErrMalformed, got %v", bad, err)
		}
	}
}

func TestParseReply(t *testing.T) {
	if p, err := ParseReply("StateDump", []byte("REPLY_SUCCESS\n{}")); err != nil || p != "{}" {
		t.Fatalf("success: %q %v", p, err)
	}
	_, err := ParseReply("PortAdd", Failure("NoSuchDev", "No such device."))
	var te *Error
	if !errors.As(err, &te) || te.Code != "NoSuchDev" || te.Message != "No such device." {
		t.Fatalf("error reply: %v", err)
	}
	if _, err := ParseReply("x", []byte("garbage")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(EncodeRequest(MethodPortConfigUpdate, "Ethernet0", "{\n}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, args, err := ParseRequest(b)
		if err != nil {
			return
		}
		m2, args2, err := ParseRequest(EncodeRequest(m, args...))
		if err != nil || m2 != m || len(args2) != len(args) {
			t.Fatalf("re-encode of %q: %q %q %v", b, m2, args2, err)
		}
	})
}

func TestOneLine(t *testing.T) {
	in := "{\n    \"ports\": {\n        \"Ethernet0\": {\n            \"up\": true,\n            \"name\": \"a, b: \\\"c\\\"\"\n        }\n    },\n    \"list\": [1, 2]\n}"
	want := `{"ports": {"Ethernet0": {"up": true, "name": "a, b: \"c\""}}, "list": [1, 2]}`
	got, err := OneLine([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("OneLine = %s, %v; want %s", got, err, want)
	}
}
