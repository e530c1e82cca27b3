ALTER TABLE "inbound_emails" DROP COLUMN "headers";--> statement-breakpoint
ALTER TABLE "inbound_emails" DROP COLUMN "text_body";--> statement-breakpoint
ALTER TABLE "inbound_emails" DROP COLUMN "html_body";