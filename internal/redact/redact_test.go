package redact

import (
	"strings"
	"testing"
)

// The corpus: command lines as they appear on real nodes (CI runners,
// cron jobs, database clients, deploy scripts). Every secret in it
// contains "SEKRET" or is listed in otherSecrets, so the test can check
// that none survives without trusting the expected outputs alone.
var corpus = []struct {
	argv string // arguments separated by '|'
	want string // the same after redaction; "" = unchanged
}{
	// The examples.
	{"migrate|--token|abcTOKEN9876SEKRET|postgres://app:S3cr3tPassSEKRET@db:5432/x",
		"migrate|--token|<redacted>|postgres://<redacted>@db:5432/x"},
	{"dbclient|--password=Hunter2secretXSEKRET", "dbclient|--password=<redacted>"},
	// Flags named like secrets, every spelling.
	{"/usr/local/bin/app|--api-key|ak_SEKRET_1|--port|8080", "/usr/local/bin/app|--api-key|<redacted>|--port|8080"},
	{"app|--apikey=SEKRET2|--verbose", "app|--apikey=<redacted>|--verbose"},
	{"app|--api_key|SEKRET3", "app|--api_key|<redacted>"},
	{"./server|-token=SEKRET4|-listen=:8080", "./server|-token=<redacted>|-listen=:8080"},
	{"./server|-secret|SEKRET5", "./server|-secret|<redacted>"},
	{"vault|write|auth/approle/login|--client-secret=SEKRET6", "vault|write|auth/approle/login|--client-secret=<redacted>"},
	{"kubectl|--token|eyJhbSEKRET7|get|pods", "kubectl|--token|<redacted>|get|pods"},
	{"aws|configure|set|aws_secret_access_key|x|--secret-access-key|SEKRET8", "aws|configure|set|aws_secret_access_key|x|--secret-access-key|<redacted>"},
	{"gpg|--batch|--passphrase|SEKRET9|-d|f.gpg", "gpg|--batch|--passphrase|<redacted>|-d|f.gpg"},
	{"wget|--http-password=SEKRET10|--user=bob|https://x/f", "wget|--http-password=<redacted>|--user=bob|https://x/f"},
	{"app|--db-password|SEKRET11|--db-user|app", "app|--db-password|<redacted>|--db-user|app"},
	{"app|--accessToken=SEKRET12", "app|--accessToken=<redacted>"},
	{"app|--auth|admin:SEKRET13", "app|--auth|<redacted>"},
	{"openssl|enc|-aes256|-pass|pass:SEKRET14|-in|x", "openssl|enc|-aes256|-pass|<redacted>|-in|x"},
	{"openssl|pkcs12|-passin|pass:SEKRET15|-passout|pass:SEKRET16", "openssl|pkcs12|-passin|<redacted>|-passout|<redacted>"},
	{"openssl|enc|-k|SEKRET17|-in|a", "openssl|enc|-k|<redacted>|-in|a"},
	{"plink|-ssh|-pw|SEKRET18|host", "plink|-ssh|-pw|<redacted>|host"},
	{"java|-Djavax.net.ssl.keyStorePassword=SEKRET19|-jar|app.jar", "java|-Djavax.net.ssl.keyStorePassword=<redacted>|-jar|app.jar"},
	{"java|-Dspring.datasource.password=SEKRET20|-Dserver.port=8080|-jar|a.jar", "java|-Dspring.datasource.password=<redacted>|-Dserver.port=8080|-jar|a.jar"},
	// Known clients' short flags.
	{"mysql|-uroot|-pSEKRET21|shop", "mysql|-uroot|-p<redacted>|shop"},
	{"/usr/bin/mysqldump|-h|db|-u|app|-pSEKRET22|--all-databases", "/usr/bin/mysqldump|-h|db|-u|app|-p<redacted>|--all-databases"},
	{"mysql|-p|shop", ""}, // prompts; shop is the database
	{"mariadb|--password=SEKRET23|-e|select 1", "mariadb|--password=<redacted>|-e|select 1"},
	{"redis-cli|-h|cache|-a|SEKRET24|ping", "redis-cli|-h|cache|-a|<redacted>|ping"},
	{"redis-cli|--pass|SEKRET25|info", "redis-cli|--pass|<redacted>|info"},
	{"sshpass|-p|SEKRET26|ssh|-p|2222|deploy@host", "sshpass|-p|<redacted>|ssh|-p|2222|deploy@host"},
	{"sshpass|-pSEKRET27|scp|a|b:", "sshpass|-p<redacted>|scp|a|b:"},
	{"mongosh|-u|admin|-p|SEKRET28|--authenticationDatabase|admin", "mongosh|-u|admin|-p|<redacted>|--authenticationDatabase|admin"},
	{"curl|-u|admin:SEKRET29|https://api/x", "curl|-u|admin:<redacted>|https://api/x"},
	{"curl|-sSf|--user|deploy:SEKRET30|https://x", "curl|-sSf|--user|deploy:<redacted>|https://x"},
	{"curl|--user=deploy:SEKRET31|https://x", "curl|--user=deploy:<redacted>|https://x"},
	{"curl|-u|admin|https://api/x", ""}, // prompts for the password
	{"curl|-H|Authorization: Bearer SEKRET32|https://api/v1", "curl|-H|Authorization: <redacted>|https://api/v1"},
	{"curl|-H|X-Api-Key: SEKRET33|-H|Accept: application/json|https://x", "curl|-H|X-Api-Key: <redacted>|-H|Accept: application/json|https://x"},
	{"curl|-H|Cookie: session=SEKRET34|https://x", "curl|-H|Cookie: <redacted>|https://x"},
	{"curl|--oauth2-bearer|SEKRET35|https://x", "curl|--oauth2-bearer|<redacted>|https://x"},
	{"smbclient|//fs/share|-U|corp\\bob%SEKRET36", "smbclient|//fs/share|-U|corp\\bob%<redacted>"},
	{"ldapsearch|-x|-D|cn=admin,dc=x|-w|SEKRET37|-b|dc=x", "ldapsearch|-x|-D|cn=admin,dc=x|-w|<redacted>|-b|dc=x"},
	{"sqlcmd|-S|db|-U|sa|-P|SEKRET38|-Q|select 1", "sqlcmd|-S|db|-U|sa|-P|<redacted>|-Q|select 1"},
	{"docker|login|-u|bot|-p|SEKRET39|registry.example.com", "docker|login|-u|bot|-p|<redacted>|registry.example.com"},
	{"docker|run|-p|8080:80|nginx", ""}, // -p is a port outside login
	{"docker|login|--password-stdin|-u|bot|registry.example.com", ""},
	{"zip|-P|SEKRET40|-r|out.zip|dir", "zip|-P|<redacted>|-r|out.zip|dir"},
	{"7z|x|-pSEKRET41|a.7z", "7z|x|-p<redacted>|a.7z"},
	// KEY=VALUE pairs.
	{"env|DB_PASSWORD=SEKRET42|PGPASSWORD=SEKRET43|HOME=/root|./migrate", "env|DB_PASSWORD=<redacted>|PGPASSWORD=<redacted>|HOME=/root|./migrate"},
	{"env|AWS_SECRET_ACCESS_KEY=SEKRET44|AWS_ACCESS_KEY_ID=AKIAEXAMPLE|aws|s3|ls", "env|AWS_SECRET_ACCESS_KEY=<redacted>|AWS_ACCESS_KEY_ID=AKIAEXAMPLE|aws|s3|ls"},
	{"env|STRIPE_API_KEY=SEKRET45|GITHUB_TOKEN=SEKRET46|node|app.js", "env|STRIPE_API_KEY=<redacted>|GITHUB_TOKEN=<redacted>|node|app.js"},
	{"terraform|apply|-var|db_password=SEKRET47|-var|region=eu", "terraform|apply|-var|db_password=<redacted>|-var|region=eu"},
	{"helm|upgrade|web|./chart|--set|auth.rootPassword=SEKRET48,image.tag=1.2", "helm|upgrade|web|./chart|--set|auth.rootPassword=<redacted>"},
	{"ansible-playbook|-e|ansible_become_pass=SEKRET49|site.yml", "ansible-playbook|-e|ansible_become_pass=<redacted>|site.yml"},
	{"vault|login|-method=userpass|username=bob|password=SEKRET50", "vault|login|-method=userpass|username=bob|password=<redacted>"},
	{"app|credentials=SEKRET51", "app|credentials=<redacted>"},
	// URLs.
	{"psql|postgresql://app:SEKRET52@db.internal:5432/shop?sslmode=require", "psql|postgresql://<redacted>@db.internal:5432/shop?sslmode=require"},
	{"git|clone|https://x-access-token:SEKRET53@github.com/org/repo.git", "git|clone|https://<redacted>@github.com/org/repo.git"},
	{"git|clone|https://ghp_SEKRET54aaaaaaaaaaaaaaaaaaaaaa@github.com/o/r", "git|clone|https://<redacted>@github.com/o/r"},
	{"app|--db=mongodb://root:SEKRET55@mongo-0,mongo-1/admin", "app|--db=mongodb://<redacted>@mongo-0,mongo-1/admin"},
	{"redis-server|--replicaof|redis://:SEKRET56@primary:6379", "redis-server|--replicaof|redis://<redacted>@primary:6379"},
	{"curl|https://hooks.example.com/x?token=SEKRET57&channel=ops", "curl|https://hooks.example.com/x?token=<redacted>&channel=ops"},
	{"curl|https://s3/x?X-Amz-Credential=SEKRET58&X-Amz-Signature=SEKRET59&X-Amz-Expires=60", "curl|https://s3/x?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>&X-Amz-Expires=60"},
	{"app|--db|jdbc:mysql://db/x?user=app&password=SEKRET60", "app|--db|jdbc:mysql://db/x?user=app&password=<redacted>"},
	// Shell scripts and one-string command lines.
	{"sh|-c|mysql -uroot -pSEKRET61 shop < dump.sql", "sh|-c|mysql -uroot -p<redacted> shop < dump.sql"},
	{"/bin/bash|-c|curl -fsS -H \"Authorization: Bearer SEKRET62\" https://api/x | jq .", "/bin/bash|-c|curl -fsS -H \"Authorization: <redacted>\" https://api/x | jq ."},
	{"bash|-c|export API_TOKEN=SEKRET63; ./deploy.sh --env prod", "bash|-c|export API_TOKEN=<redacted> ./deploy.sh --env prod"},
	{"sh|-c|PGPASSWORD='SEKRET64 with space' pg_dump -h db shop", "sh|-c|PGPASSWORD=<redacted> pg_dump -h db shop"},
	{"sh|-c|./app --password 'SEKRET65 x' --port 80", "sh|-c|./app --password <redacted> --port 80"},
	{"postgres: app shop 10.0.0.5(5123) idle", ""},
	{"sh|-c|ssh deploy@db \"mysql -uapp -pSEKRET71 shop\"", "sh|-c|ssh deploy@db \"mysql -uapp -p<redacted> shop\""},
	{"bash|-c|sh -c 'curl -u admin:SEKRET72 https://x'; true", "bash|-c|sh -c 'curl -u admin:<redacted> https://x'; true"},
	{"migrate --token SEKRET66 up", "migrate --token <redacted> up"}, // setproctitle: one string
	// JSON and token shapes.
	{"curl|-d|{\"username\":\"bob\",\"password\":\"SEKRET67\"}|https://x/login", "curl|-d|{\"username\":\"bob\",\"password\":\"<redacted>\"}|https://x/login"},
	{"app|--config-json|{\"apiKey\": \"SEKRET68\", \"region\": \"eu\"}", "app|--config-json|{\"apiKey\": \"<redacted>\", \"region\": \"eu\"}"},
	{"app|--header|eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJTRUtSRVQ2OSJ9.sig", "app|--header|<redacted>"},
	{"gh|auth|login|--with-token|ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "gh|auth|login|--with-token|<redacted>"},
	{"notify|xoxb-1234567890-abcdefghij", "notify|<redacted>"},
	{"app|glpat-abcdefghijklmnopqrstu", "app|<redacted>"},
	{"app|--key-data|-----BEGIN RSA PRIVATE KEY-----\nMIIEowSEKRET70\n-----END RSA PRIVATE KEY-----", "app|--key-data|<redacted>"},
	// Left alone: no secret here, and nothing that merely resembles one.
	{"nginx: worker process", ""},
	{"/usr/sbin/sshd|-D|-p|22", ""},
	{"sort|--key|2|-t|,|data.csv", ""},
	{"app|--password-file|/run/secrets/db|--token-type|bearer", ""},
	{"docker|login|--password-stdin|registry", ""},
	{"llm|--max-tokens|100|--no-auth|prompt", ""},
	{"app|--auth-mode|oidc|--secret-name|db-creds", ""},
	{"java|-Xmx2g|-Dserver.port=8080|-jar|/opt/app.jar", ""},
	{"python3|-m|http.server|8000", ""},
	{"curl|-s|https://example.com/api?page=2&q=tokens", ""},
	{"git|log|--author=bob|--since=2.weeks", ""},
	{"tar|-czf|backup.tgz|/var/lib/secret-store", ""},
	{"node|/app/server.js|--port=3000|--session-timeout=30", ""},
	{"kubectl|create|secret|generic|db|--from-file=./password.txt", ""},
	{"env|PWD=/srv|KEY=value|./run", ""},
}

// otherSecrets are secrets of the corpus without the SEKRET tag.
var otherSecrets = []string{"ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "xoxb-1234567890", "glpat-abcdefghijklmnopqrstu", "eyJzdWIiOiJTRUtSRVQ2OSJ9", "admin:S", "x-access-token"}

func TestCorpus(t *testing.T) {
	total := 0
	for _, c := range corpus {
		argv := strings.Split(c.argv, "|")
		got, n := Argv(argv)
		want := c.want
		if want == "" {
			want = c.argv
		}
		if g := strings.Join(got, "|"); g != want {
			t.Errorf("Argv(%q)\n got %q\nwant %q", c.argv, g, want)
		}
		if c.want == "" && n != 0 {
			t.Errorf("Argv(%q): %d redactions counted, want 0", c.argv, n)
		}
		if c.want != "" && n != strings.Count(want, Marker) {
			t.Errorf("Argv(%q): %d redactions counted, want %d", c.argv, n, strings.Count(want, Marker))
		}
		total += n
		joined := strings.Join(got, " ")
		for _, s := range otherSecrets {
			if strings.Contains(joined, s) {
				t.Errorf("Argv(%q): secret %q survived: %q", c.argv, s, joined)
			}
		}
		if strings.Contains(joined, "SEKRET") {
			t.Errorf("Argv(%q): a secret survived: %q", c.argv, joined)
		}
		if strings.Join(argv, "|") != c.argv {
			t.Errorf("Argv modified its input")
		}
	}
	t.Logf("%d command lines, %d values redacted", len(corpus), total)
}

// Redaction is stable: redacting an already redacted command line changes
// and counts nothing (a row written from the scan and again from /proc).
func TestIdempotent(t *testing.T) {
	for _, c := range corpus {
		once, _ := Argv(strings.Split(c.argv, "|"))
		twice, n := Argv(once)
		if n != 0 || strings.Join(twice, "|") != strings.Join(once, "|") {
			t.Errorf("second pass over %q: %d more, %q", strings.Join(once, "|"), n, strings.Join(twice, "|"))
		}
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "DB_PASSWORD": true, "keyStorePassword": true, "X-Auth-Token": true,
		"api-key": true, "API_KEY": true, "apiKey": true, "HTTPToken": true, "client_secret": true,
		"aws_secret_access_key": true, "private-key": true, "authorization": true,
		"key": false, "KEY": false, "password-file": false, "no-password": false, "max-tokens": false,
		"AWS_ACCESS_KEY_ID": false, "tokenizer": false, "author": false, "port": false, "user": false,
		"monkey": false, "keyspace": false, "session-timeout": false,
	} {
		if got := SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func FuzzArgv(f *testing.F) {
	for _, c := range corpus {
		f.Add(c.argv)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv := strings.Split(s, "|")
		got, n := Argv(argv)
		if len(got) != len(argv) || n < 0 {
			t.Fatalf("Argv(%q) = %q, %d", s, got, n)
		}
		again, m := Argv(got)
		if m != 0 || strings.Join(again, "|") != strings.Join(got, "|") {
			t.Fatalf("not idempotent: %q -> %q -> %q (%d)", s, got, again, m)
		}
	})
}

func BenchmarkArgv(b *testing.B) {
	plain := []string{"/usr/lib/jvm/java-17/bin/java", "-Xmx2g", "-cp", "/opt/app/lib/*", "com.example.Main", "--port", "8080"}
	secret := strings.Split("env|DB_PASSWORD=SEKRET42|./migrate|--token|abc|postgres://app:x@db/x", "|")
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			Argv(plain)
		}
	})
	b.Run("secret", func(b *testing.B) {
		for b.Loop() {
			Argv(secret)
		}
	})
}
