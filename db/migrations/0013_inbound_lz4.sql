-- Received mail's bodies and headers are written once per mail and read rarely: lz4 compresses
-- them for a fraction of pglz's CPU. Only where the server was built with lz4 (PGlite may not be).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
    ALTER TABLE "inbound_emails" ALTER COLUMN "text_body" SET COMPRESSION lz4;
    ALTER TABLE "inbound_emails" ALTER COLUMN "html_body" SET COMPRESSION lz4;
    ALTER TABLE "inbound_emails" ALTER COLUMN "headers" SET COMPRESSION lz4;
    ALTER TABLE "inbound_emails" ALTER COLUMN "attachments" SET COMPRESSION lz4;
  END IF;
END
$$;
