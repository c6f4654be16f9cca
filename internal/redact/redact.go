// Package redact replaces secrets in command lines before they are written
// to an archive: values of flags named like secrets (--password, --token,
// --api-key ...), the password flags of known clients (mysql -pX, redis-cli
// -a X, curl -u user:X ...), KEY=VALUE pairs whose key names a secret, URL
// userinfo, credential headers, bearer tokens and a few unmistakable token
// shapes. Every rule is here, in one place; docs/usage.md lists them.
//
// The rules err on the side of hiding: a value that is not a secret but
// sits where one would (the value of --token-type, say, is kept by an
// exception, but the database name after `mysql --password` is not) may be
// replaced. An archive is attached to tickets; a missing argument costs
// less than a leaked password.
package redact

import (
	"regexp"
	"strings"
)

// Marker replaces every redacted value.
const Marker = "<redacted>"

// Argv returns a copy of argv with every secret value replaced by Marker,
// and the number of values replaced. Arguments that hold whitespace (the
// script of `sh -c`, a setproctitle'd command line) are split into
// shell-like words and checked word by word as well.
func Argv(argv []string) ([]string, int) {
	out := append([]string(nil), argv...)
	return out, words(out, maxDepth)
}

// flagValue says which part of a flag's value is the secret.
type flagValue uint8

const (
	wholeValue   flagValue = iota // the value is the secret
	afterColon                    // user:SECRET (curl -u); no colon, nothing to hide
	afterPercent                  // user%SECRET (smbclient -U)
)

type flagRule struct {
	value flagValue
	// attachedOnly: the secret is only ever attached (mysql -pSECRET);
	// a separate next argument is something else (`mysql -p dbname`
	// prompts for the password and opens dbname).
	attachedOnly bool
}

// client holds the password flags of one known program whose short flags
// mean a password only for it (-p is a port for ssh, a password for
// sshpass). sub holds subcommands with rules of their own (docker login).
type client struct {
	short map[byte]flagRule
	long  map[string]flagRule
	sub   map[string]*client
	// wrapper: the options end at the first other argument, the command
	// it runs (sshpass -p X ssh -p 2222 host: the second -p is a port).
	wrapper bool
}

var (
	mysqlLike  = &client{short: map[byte]flagRule{'p': {attachedOnly: true}}}
	mongoLike  = &client{short: map[byte]flagRule{'p': {}}}
	ldapLike   = &client{short: map[byte]flagRule{'w': {}}}
	sqlcmdLike = &client{short: map[byte]flagRule{'P': {}}}
	curl       = &client{
		short: map[byte]flagRule{'u': {value: afterColon}, 'U': {value: afterColon}, 'E': {value: afterColon}},
		long:  map[string]flagRule{"user": {value: afterColon}, "proxy-user": {value: afterColon}, "cert": {value: afterColon}},
	}
	dockerLike = &client{sub: map[string]*client{"login": {short: map[byte]flagRule{'p': {}}}}}
)

// clients maps a program's base name to its password flags.
var clients = map[string]*client{
	"mysql": mysqlLike, "mysqldump": mysqlLike, "mysqladmin": mysqlLike, "mysqlimport": mysqlLike,
	"mysqlshow": mysqlLike, "mysqlcheck": mysqlLike, "mysqlbinlog": mysqlLike, "mysqlpump": mysqlLike,
	"mariadb": mysqlLike, "mariadb-dump": mysqlLike, "mariadb-admin": mysqlLike,
	"mongo": mongoLike, "mongosh": mongoLike, "mongodump": mongoLike, "mongorestore": mongoLike,
	"mongoexport": mongoLike, "mongoimport": mongoLike, "mongostat": mongoLike, "mongotop": mongoLike,
	"sshpass":    {short: map[byte]flagRule{'p': {}}, wrapper: true},
	"redis-cli":  {short: map[byte]flagRule{'a': {}}},
	"valkey-cli": {short: map[byte]flagRule{'a': {}}},
	"ldapsearch": ldapLike, "ldapmodify": ldapLike, "ldapadd": ldapLike, "ldapdelete": ldapLike,
	"ldapwhoami": ldapLike, "ldappasswd": ldapLike, "ldapcompare": ldapLike, "ldapmodrdn": ldapLike,
	"sqlcmd": sqlcmdLike, "bcp": sqlcmdLike,
	"curl":      curl,
	"smbclient": {short: map[byte]flagRule{'U': {value: afterPercent}}, long: map[string]flagRule{"user": {value: afterPercent}}},
	"docker":    dockerLike, "podman": dockerLike, "nerdctl": dockerLike, "buildah": dockerLike, "skopeo": dockerLike, "helm": dockerLike,
	"openssl": {short: map[byte]flagRule{'k': {}}},
	"zip":     {short: map[byte]flagRule{'P': {}}},
	"unzip":   {short: map[byte]flagRule{'P': {}}},
	"7z":      {short: map[byte]flagRule{'p': {attachedOnly: true}}},
	"7za":     {short: map[byte]flagRule{'p': {attachedOnly: true}}},
	"7zz":     {short: map[byte]flagRule{'p': {attachedOnly: true}}},
}

// maxDepth bounds how deep quoted shell text is split into words:
// sh -c "ssh host \"mysql -pX\"" is three levels.
const maxDepth = 3

// words applies the rules to a sequence of words in place: an argv, or the
// words of one argument; depth says how many more levels of shell text
// may be split into words.
func words(ws []string, depth int) int {
	n := 0
	var cur *client
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		if w == Marker {
			continue
		}
		if cur != nil && cur.wrapper && !strings.HasPrefix(w, "-") {
			cur = nil
		}
		if c := clients[baseName(w)]; c != nil {
			cur = c
			continue
		}
		if cur != nil && cur.sub[w] != nil {
			cur = cur.sub[w]
			continue
		}
		var k int
		spaced := depth > 0 && strings.ContainsAny(w, " \t\n")
		// A quoted value in an argument of several shell words is shell
		// text (PGPASSWORD='a b' pg_dump ...): its words are checked below.
		if !spaced || !quotedValue(w) || len(shellWords(w)) < 2 {
			w, k = flag(ws, i, cur)
			n += k
			if k == 0 {
				w, k = keyValue(w)
				n += k
			}
		}
		w, k = embedded(w)
		n += k
		if spaced {
			w, k = splitWords(w, depth-1)
			n += k
		}
		ws[i] = w
	}
	return n
}

// flag handles ws[i] when it is a flag whose value is a secret: the value
// attached (--token=X, -pX) is replaced in the returned word, a separate
// value (--token X) in ws[i+1].
func flag(ws []string, i int, cur *client) (string, int) {
	w := ws[i]
	if len(w) < 2 || w[0] != '-' || w == "--" {
		return w, 0
	}
	nextValue := func(r flagRule) int {
		if r.attachedOnly || i+1 >= len(ws) || ws[i+1] == "" || looksLikeFlag(ws[i+1]) || ws[i+1] == Marker {
			return 0
		}
		v, ok := hideValue(ws[i+1], r.value)
		if !ok {
			return 0
		}
		ws[i+1] = v
		return 1
	}
	// A known client's short flag: -pSECRET or -p SECRET.
	if cur != nil && w[1] != '-' {
		if r, ok := cur.short[w[1]]; ok {
			if len(w) == 2 {
				return w, nextValue(r)
			}
			if w[2:] == Marker {
				return w, 0
			}
			if v, ok := hideValue(w[2:], r.value); ok {
				return w[:2] + v, 1
			}
			return w, 0
		}
	}
	name := strings.TrimLeft(w, "-")
	if w[1] != '-' && len(name) < 2 {
		return w, 0 // an unknown short flag
	}
	name, val, hasValue := strings.Cut(name, "=")
	if !isName(name) || strings.Contains(w, Marker) {
		return w, 0 // shell text (checked word by word), or done already
	}
	r, ok := flagRule{}, false
	if cur != nil {
		r, ok = cur.long[strings.ToLower(name)]
	}
	if !ok && !SecretName(name) {
		return w, 0
	}
	if !hasValue {
		return w, nextValue(r)
	}
	if val == "" || strings.HasPrefix(val, Marker) {
		return w, 0
	}
	v, changed := hideValue(val, r.value)
	if !changed {
		return w, 0
	}
	return w[:len(w)-len(val)] + v, 1
}

// hideValue replaces the secret part of a flag's value.
func hideValue(v string, how flagValue) (string, bool) {
	switch how {
	case afterColon, afterPercent:
		sep := ":"
		if how == afterPercent {
			sep = "%"
		}
		user, secret, ok := strings.Cut(v, sep)
		if !ok || secret == "" || secret == Marker {
			return v, false
		}
		return user + sep + Marker, true
	}
	return Marker, true
}

// quotedValue: NAME='... or --flag="... (shell text, not one argument).
func quotedValue(w string) bool {
	i := strings.IndexByte(w, '=')
	return i >= 0 && i+1 < len(w) && (w[i+1] == '\'' || w[i+1] == '"')
}

// looksLikeFlag: `--password -h host` prompts for the password; -h is not it.
func looksLikeFlag(w string) bool {
	return len(w) > 1 && w[0] == '-' && (w[1] == '-' || isLetter(w[1]))
}

// keyValue handles a whole word NAME=VALUE (an environment assignment
// passed through env(1) or a config override) whose name is a secret's.
func keyValue(w string) (string, int) {
	trimmed := strings.TrimLeft(w, `"'`)
	name, val, ok := strings.Cut(trimmed, "=")
	if !ok || val == "" || strings.HasPrefix(val, Marker) || !isName(name) || !SecretName(name) {
		return w, 0
	}
	return w[:len(w)-len(val)] + Marker, 1
}

var (
	// "password": "x" in JSON given on the command line.
	jsonPair = regexp.MustCompile(`"([A-Za-z0-9_.\-]{1,64})"\s*:\s*"((?:[^"\\]|\\.)*)"`)
	// Authorization: Basic x, X-Api-Key: x ... (a header given to curl
	// -H, wget --header, git -c http.extraHeader=); the value runs to a
	// quote, a line end or the end of the argument.
	headerPair = regexp.MustCompile(`([A-Za-z][A-Za-z0-9_\-]{0,63}):[ \t]*([^"'\r\n]+)`)
	bearer     = regexp.MustCompile(`(?i)\bbearer[ \t]+([A-Za-z0-9._~+/=\-]+)`)
	// Tokens whose shape alone says what they are.
	tokenShape = regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*` + // JWT
		`|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})` + // GitHub
		`|\bglpat-[A-Za-z0-9_\-]{20,}` + // GitLab
		`|\bxox[abposr]-[A-Za-z0-9\-]{10,}` + // Slack
		`|\b[sr]k_live_[A-Za-z0-9]{16,}` + // Stripe
		`|\bAIza[0-9A-Za-z_\-]{35}` + // Google API key
		`|\bnpm_[A-Za-z0-9]{36}` + // npm
		`|-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|$)`)
	tokenHints = []string{"eyJ", "gh", "github_pat_", "glpat-", "xox", "k_live_", "AIza", "npm_", "-----BEGIN"}
)

// embedded replaces secrets inside a word: URL userinfo, query parameters
// named like secrets, JSON pairs, credential headers, bearer tokens and
// token shapes. Each rule runs only when the word holds its telltale
// characters, so ordinary arguments cost a few byte searches.
func embedded(w string) (string, int) {
	n := 0
	var k int
	if strings.Contains(w, "://") {
		w, k = userinfo(w)
		n += k
		w, k = queryParams(w)
		n += k
	}
	if strings.Contains(w, `"`) && strings.Contains(w, ":") {
		w, k = replaceGroup(w, jsonPair, true)
		n += k
	}
	if strings.Contains(w, ":") {
		w, k = replaceGroup(w, headerPair, true)
		n += k
	}
	if strings.Contains(w, "earer") || strings.Contains(w, "EARER") {
		w, k = replaceGroup(w, bearer, false)
		n += k
	}
	for _, h := range tokenHints {
		if strings.Contains(w, h) {
			w = tokenShape.ReplaceAllStringFunc(w, func(string) string { n++; return Marker })
			break
		}
	}
	return w, n
}

// replaceGroup replaces the last submatch of every match of re by Marker;
// with named, only where the first submatch is a secret's name. A match
// whose name is not a secret's is skipped past its name only, so
// "https://h/x token: T" still finds the token after the scheme.
func replaceGroup(w string, re *regexp.Regexp, named bool) (string, int) {
	n := 0
	for off := 0; off < len(w); {
		m := re.FindStringSubmatchIndex(w[off:])
		if m == nil {
			break
		}
		vs, ve := off+m[len(m)-2], off+m[len(m)-1]
		if named && !SecretName(w[off+m[2]:off+m[3]]) {
			off += m[3] + 1
			continue
		}
		if v := strings.TrimSpace(w[vs:ve]); v == "" || v == Marker {
			off = ve
			continue
		}
		w = w[:vs] + Marker + w[ve:]
		off = vs + len(Marker)
		n++
	}
	return w, n
}

// userinfo replaces the userinfo of every scheme://user:pass@host in w
// (the user too: it is often the token, as in https://TOKEN@github.com).
func userinfo(w string) (string, int) {
	n := 0
	for from := 0; ; {
		i := strings.Index(w[from:], "://")
		if i < 0 {
			return w, n
		}
		start := from + i + 3
		end := start + strings.IndexFunc(w[start:]+"/", func(r rune) bool {
			return r == '@' || r == '/' || r == '?' || r == '#' || r == ' ' || r == '\t' || r == '\n' || r == '"' || r == '\''
		})
		from = end
		if end >= len(w) || w[end] != '@' || end == start || w[start:end] == Marker {
			continue
		}
		w = w[:start] + Marker + w[end:]
		from = start + len(Marker)
		n++
	}
}

// queryParams replaces the values of URL query parameters named like
// secrets (?token=X&page=2 keeps page).
func queryParams(w string) (string, int) {
	n := 0
	for i := 0; i < len(w); i++ {
		if w[i] != '?' && w[i] != '&' && w[i] != ';' {
			continue
		}
		eq := strings.IndexByte(w[i+1:], '=')
		if eq <= 0 {
			continue
		}
		name := w[i+1 : i+1+eq]
		if !isName(name) || !SecretName(name) {
			continue
		}
		vs := i + 2 + eq
		ve := vs
		for ve < len(w) && !strings.ContainsRune("&;# \t\n\"'", rune(w[ve])) {
			ve++
		}
		if ve == vs || w[vs:ve] == Marker {
			continue
		}
		w = w[:vs] + Marker + w[ve:]
		i = vs + len(Marker) - 1
		n++
	}
	return w, n
}

// splitWords checks the shell-like words of one argument (the script of
// `sh -c`, a command line rewritten as one string by setproctitle) as an
// argv of their own, keeping the text between words as it was. In a
// single word, each quoted part is shell text one level down
// (sh -c 'curl -u a:b x'; true).
func splitWords(arg string, depth int) (string, int) {
	spans := shellWords(arg)
	if len(spans) == 1 {
		return splitQuoted(arg, depth)
	}
	ws := make([]string, len(spans))
	for i, s := range spans {
		ws[i] = arg[s[0]:s[1]]
	}
	n := words(ws, depth)
	if n == 0 {
		return arg, 0
	}
	var b strings.Builder
	last := 0
	for i, s := range spans {
		b.WriteString(arg[last:s[0]])
		b.WriteString(ws[i])
		last = s[1]
	}
	b.WriteString(arg[last:])
	return b.String(), n
}

// splitQuoted applies splitWords to the inside of every quoted part of
// one shell word that holds whitespace.
func splitQuoted(w string, depth int) (string, int) {
	n := 0
	var b strings.Builder
	last := 0
	for i := 0; i < len(w); i++ {
		q := w[i]
		if q == '\\' {
			i++
			continue
		}
		if q != '"' && q != '\'' {
			continue
		}
		end := i + 1
		for end < len(w) && w[end] != q {
			if w[end] == '\\' && q == '"' {
				end++
			}
			end++
		}
		if end >= len(w) {
			break
		}
		inner := w[i+1 : end]
		if strings.ContainsAny(inner, " \t\n") {
			red, k := splitWords(inner, depth)
			if k > 0 {
				b.WriteString(w[last : i+1])
				b.WriteString(red)
				last = end
				n += k
			}
		}
		i = end
	}
	if n == 0 {
		return w, 0
	}
	b.WriteString(w[last:])
	return b.String(), n
}

// shellWords returns the [start, end) spans of the whitespace-separated
// words of s; quotes hold a word together (`--password='a b'` is one).
func shellWords(s string) [][2]int {
	var spans [][2]int
	start := -1
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(s) {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n':
			if start >= 0 {
				spans = append(spans, [2]int{start, i})
				start = -1
			}
			continue
		case c == '\'' || c == '"':
			quote = c
		case c == '\\' && i+1 < len(s):
			i++
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		spans = append(spans, [2]int{start, len(s)})
	}
	return spans
}

// Words that make a name a secret's: the name's last component may end
// with one (apikey, accessToken, DB_PASSWORD), or be one of the short ones.
var (
	strongWords = []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey",
		"secretkey", "privatekey", "credential", "credentials", "bearer", "cookie", "authorization"}
	shortWords = map[string]bool{"pass": true, "pw": true, "auth": true, "creds": true, "cred": true,
		"sig": true, "signature": true, "passin": true, "passout": true, "tokens": true, "secrets": true,
		"passwords": true, "cookies": true}
	// A first component that makes the flag a switch (--no-password) or a
	// number (--max-tokens).
	exemptFirst = map[string]bool{"no": true, "max": true, "min": true, "num": true, "number": true,
		"skip": true, "disable": true, "enable": true, "without": true, "use": true, "show": true}
	// A last component that names a property of the secret or where it
	// is, not the secret: --password-file PATH, --token-type bearer,
	// --password-stdin, ACCESS_KEY_ID.
	exemptLast = map[string]bool{"file": true, "files": true, "path": true, "dir": true, "directory": true,
		"stdin": true, "env": true, "prompt": true, "type": true, "mode": true, "method": true, "name": true,
		"names": true, "url": true, "uri": true, "endpoint": true, "id": true, "length": true, "len": true,
		"ttl": true, "timeout": true, "expiry": true, "expires": true, "expiration": true, "header": true,
		"command": true, "cmd": true, "helper": true, "format": true, "count": true, "size": true,
		"policy": true, "required": true, "jar": true, "source": true, "limit": true, "version": true,
		"algorithm": true, "alg": true, "location": true, "kind": true, "scope": true, "scopes": true,
		"prefix": true, "field": true, "lifetime": true, "duration": true, "age": true, "rotation": true}
)

// SecretName reports whether a flag, variable, parameter or header name
// names a secret: DB_PASSWORD, --api-key, accessToken, X-Auth-Token,
// javax.net.ssl.keyStorePassword; not --password-file, --no-auth,
// --max-tokens, AWS_ACCESS_KEY_ID or a lone --key (sort --key 2).
func SecretName(name string) bool {
	cs := components(name)
	if len(cs) == 0 || exemptFirst[cs[0]] || exemptLast[cs[len(cs)-1]] {
		return false
	}
	for i, c := range cs {
		if shortWords[c] || (i > 0 && (c == "key" || c == "keys")) {
			return true
		}
		for _, s := range strongWords {
			if strings.HasSuffix(c, s) {
				return true
			}
		}
	}
	return false
}

// components splits a name into lower-case words at non-alphanumerics and
// camelCase boundaries: "keyStorePassword" and "KEY_STORE_PASSWORD" give
// key, store, password; "HTTPToken" gives http, token.
func components(name string) []string {
	var out []string
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			out = append(out, strings.ToLower(name[start:end]))
		}
		start = -1
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') {
			flush(i)
			continue
		}
		if start >= 0 && isUpper(c) && i > start {
			prev := name[i-1]
			nextLower := i+1 < len(name) && name[i+1] >= 'a' && name[i+1] <= 'z'
			if !isUpper(prev) || nextLower {
				flush(i)
			}
		}
		if start < 0 {
			start = i
		}
	}
	flush(len(name))
	return out
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }

// isName: a variable or parameter name, not a path or an expression.
func isName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func baseName(w string) string {
	if i := strings.LastIndexByte(w, '/'); i >= 0 {
		return w[i+1:]
	}
	return w
}
