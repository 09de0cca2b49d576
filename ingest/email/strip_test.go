package email

import "testing"

func TestStripQuoted(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"gt quote", "Fine now.\n\n> old text\n> more", "Fine now.\n\n"},
		{"on wrote single line", "Yes.\n\nOn Mon, 6 Jan 2025 at 10:00, Bob <bob@x.test> wrote:\n> q", "Yes.\n"},
		{"on wrote wrapped", "Yes.\nOn Mon, Jan 6, 2025 at 10:00 AM Bob Smith <\nbob@x.test> wrote:\n\n> q", "Yes."},
		{"attribution without gt quotes cuts", "Yes.\nOn Mon, 6 Jan 2025, Bob wrote:\nold unmarked text", "Yes."},
		{"german", "Ja.\n\nAm 06.01.2025 um 10:00 schrieb Max Muster <max@x.de>:\n> alt", "Ja.\n"},
		{"french", "Oui.\nLe lun. 6 janv. 2025 à 10:00, Max <max@x.fr> a écrit :\n> vieux", "Oui."},
		{"spanish", "Sí.\nEl lun, 6 ene 2025 a las 10:00, Max (<max@x.es>) escribió:\n> viejo", "Sí."},
		{"original message", "Ok.\n-----Original Message-----\nFrom: a\nSent: b\n\nold", "Ok."},
		{"german original message", "Ok.\n-----Ursprüngliche Nachricht-----\nVon: a", "Ok."},
		{"outlook header block", "Ok.\n\nFrom: Support <s@x.test>\nSent: Monday\nTo: me\nSubject: x\n\nold", "Ok.\n"},
		{"outlook bold header block", "Ok.\n*From:* Support <s@x.test>\n*Sent:* Monday\nold", "Ok."},
		{"underscore separator", "Ok.\n________________________________\nFrom: Support\nSent: Monday\nold", "Ok."},
		{"underscores alone are content", "Total\n______________________________\n42", "Total\n______________________________\n42"},
		{"from line alone is content", "From: my old address I cannot log in\nplease help", "From: my old address I cannot log in\nplease help"},
		{"signature", "Thanks\n-- \nJane\nACME", "Thanks"},
		{"signature no space", "Thanks\n--\nJane", "Thanks"},
		{"signature first line ignored", "-- \nonly", "-- \nonly"},
		{"iphone", "Thanks\n\nSent from my iPhone", "Thanks\n"},
		{"outlook ios", "Thanks\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Thanks\n"},
		{"german iphone", "Danke\nVon meinem iPhone gesendet", "Danke"},
		{"inline answers kept", "On Mon, Bob wrote:\n> q1\na1\n> q2\na2", "a1\na2"},
		{"no quote untouched", "Just text.\nTwo lines.", "Just text.\nTwo lines."},
		{"crlf", "Yes.\r\n> old\r\n", "Yes.\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tidyText(stripQuoted(tc.in)); got != tidyText(tc.want) {
				t.Errorf("stripQuoted(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}
